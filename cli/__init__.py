"""The one CLI, `tiergate`. Heavy imports happen inside commands so `--help` stays instant."""
