"""The LeDeR workspace: the web application people use. A backend-for-frontend that renders pages
and reaches the five services only through their HTTP APIs, as the signed-in person."""
