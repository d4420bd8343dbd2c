"""The models Django loads for the `analyses` app, defined in its contexts.

`analyses.library.models` (classifiers, videos, previews and their processing state) and
`analyses.runs.models` (analyses), `analyses.sharing.models` (shares and share links). Migrations 0001-0003 name the upload path functions as
`analyses.models.*_upload_path`, so they are re-exported here too.
"""

from analyses.compare.models import (  # noqa: F401 - side-by-side comparisons and their difference jobs
    Comparison,
    ComparisonColumn,
    ComparisonDifference,
)
from analyses.library.models import (  # noqa: F401 - re-exported for Django and the migrations
    Classifier,
    ModelFormat,
    OwnedModel,
    Preview,
    ProcessedUpload,
    ProcessingStatus,
    Video,
    classifier_upload_path,
    video_upload_path,
)
from analyses.runs.models import (  # noqa: F401
    ACTIVE_STATUSES,
    Analysis,
    AnalysisStatus,
    Verification,
    VerificationStatus,
)
from analyses.sharing.models import Share, SharedInboxVisit, ShareLink, ShareRole  # noqa: F401
