"""welfare-outreach: find households in hidden welfare need and write outreach lists."""

__version__ = "0.1.0"
