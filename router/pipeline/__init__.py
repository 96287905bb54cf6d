"""Pure pipeline stages shared by the route worker and `router spec test` (no sockets here)."""
