"""Sharing: read-only shares of analyses, classifiers and videos with a user or a team, and
revocable expiring share links that show one analysis's result without login."""
