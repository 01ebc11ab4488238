"""Privacy: the customer's data export (GDPR access), erasure, and the retention purge."""
