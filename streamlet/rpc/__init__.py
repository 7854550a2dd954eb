"""Control plane: websocket RPC between the JobManager and TaskManagers (DESIGN.md section 7)."""
