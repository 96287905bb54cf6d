"""Pure pipeline stages shared by the route worker and `router spec test` (tools/spec; no sockets here)."""
