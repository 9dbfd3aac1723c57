"""The composition root: the `leder` command, the embedded stack it starts, `leder docs`, the demo, and the
generator of realistic people and notifications. It may know every service; infra/ and events/ know none."""
