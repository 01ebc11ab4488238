"""Review errors."""

from __future__ import annotations

from boxoffice.core.errors import Conflict, Forbidden, NotFound


class ReviewNotFound(NotFound):
    title = "Review not found"


class ReviewNotAllowed(Forbidden):
    code = "review_not_allowed"
    title = "Only customers who saw the movie may review it"


class AlreadyReviewed(Conflict):
    code = "already_reviewed"
    title = "You have already reviewed this movie"


class OwnReviewVote(Forbidden):
    code = "own_review"
    title = "You cannot vote for your own review"
