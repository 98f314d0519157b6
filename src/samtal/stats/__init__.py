"""Statistics from call records (spec/stats.md): `figures` computes them from records alone;
`copy` reads a period's records from the customer's copy; `report` draws the HTML report."""

from samtal.stats.figures import BUCKETS, figures

__all__ = ["BUCKETS", "figures"]
