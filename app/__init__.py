"""Vision-to-tag: a task-queue service that turns videos into tags and time-coded insights."""

__version__ = "0.1.0"
