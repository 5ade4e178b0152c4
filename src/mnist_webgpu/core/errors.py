class PipelineError(Exception):
    """A failure already phrased as the one line the user sees (what, and where)."""


class SiteError(PipelineError):
    """A missing or malformed input of the site stage; the message names the file."""
