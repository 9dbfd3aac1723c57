// Enhancement only: every page works without script.
import { initAll } from "/static/nhsuk/nhsuk-frontend.min.js";
initAll();
