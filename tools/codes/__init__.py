"""`router codes`: look an error code up; generate docs/error-codes.md and the DLQ table from router/codes.py."""
