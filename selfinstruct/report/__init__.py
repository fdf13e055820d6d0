"""``selfinstruct report``: a self-contained HTML page and PNG figures that show what a run made."""
