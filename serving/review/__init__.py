"""The review service: its JSON API (`api.py`) on the feedback store; the web UI mounts the same router."""
