"""The REST API of the analyses app (`/api/v1/`): the pages' operations, through the same
selectors and services (never a second copy of the permission rules), with the one error shape
and pagination of `gradcam_site.api`."""
