"""The example application whose handlers the pipelines in this directory run."""
