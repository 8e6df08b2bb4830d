"""The vmsnap console: every VM's snapshots, schedules and operations on one web page.

`vmsnap console` serves it. It reads and acts only through the SDK (`starter.sdk`):
the records in the cluster for what snapshots exist, Temporal for the work and the
schedules; every action starts the same workflow the CLI starts, under the same ID.

- `console.protection`: pure judgements (fresh, stale, no snapshot) and the fleet's figures;
- `console.chart`: the freeze-window distribution as server-rendered SVG;
- `console.settings`: how it is started (address, auth, actions, namespaces);
- `console.security`: who is asking (token, session, trusted proxy header) and CSRF;
- `console.gather`: what a page shows, read through the SDK;
- `console.actions`: the forms that start operations, and their checks;
- `console.app`: the Starlette application (routes, templates, static files);
- `console.server`: uvicorn on the settings' address.
"""
