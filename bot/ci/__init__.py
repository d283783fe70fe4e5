"""`deploybot ci`: the pipeline's side of the checklist (start, report, deployed, gate) over the HTTP API."""
