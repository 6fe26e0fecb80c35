"""The model workshop: dataset recipes and builds (labels, pseudo-labels, close-ups), training,
evaluation, export, the held-out street samples and their CLI commands. Imports the detect runtime and
streams; the runtime never imports this package."""
