"""Request and response bodies (pydantic): the JSON the service takes and gives, and what the
OpenAPI page at ``/docs`` shows.

Request bodies are strict: a number given as a string, a boolean where a number goes, NaN or an
unknown field is refused with 422 naming the field, rather than guessed at.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

#: The most items one list returns (k of recommendations and similar items).
MAX_K = 1000
#: The most (user, item) pairs one POST /v1/predict takes.
MAX_PREDICT_PAIRS = 10_000
#: The most ratings one new user may bring to POST /v1/recommendations.
MAX_NEW_USER_RATINGS = 10_000


def _raw_id(value: object) -> int | str:
    # One error for "neither an integer nor a string" instead of pydantic's one per union member.
    if isinstance(value, int | str) and not isinstance(value, bool):
        return value
    raise ValueError(f"must be an integer or a string id, got {type(value).__name__}")


RawId = Annotated[
    int | str,
    PlainValidator(_raw_id),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}]}),
    Field(description="a raw id of the rating file (integer or string)"),
]
Rating = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Health(BaseModel):
    status: str = Field(description="'ok' while the process serves")


class ModelInfo(BaseModel):
    model: str = Field(description="registry name, e.g. i-autorec")
    config: dict[str, Any]
    n_users: int
    n_items: int
    n_ratings: int = Field(description="training (user, item) pairs")
    rating_scale: list[float]
    format_version: int | None
    versions: dict[str, Any] = Field(description="autorec, torch, numpy, python it was saved by")
    fingerprint: dict[str, str | None] = Field(
        description="training_pairs_sha256 (vocabularies and rated pairs), weights_sha256, "
        "meta_sha256 (model.json)"
    )
    model_dir: str
    loaded_at: float = Field(description="Unix time the model was loaded")
    can_fold_in: bool
    has_item_embeddings: bool


class ScoredItem(BaseModel):
    item_id: RawId
    score: float = Field(description="predicted rating (similar items: cosine similarity)")


class Recommendations(BaseModel):
    user_id: RawId | None = Field(description="null for a new user")
    items: list[ScoredItem]


class SimilarItems(BaseModel):
    item_id: RawId
    items: list[ScoredItem]


class Pair(_Strict):
    user_id: RawId
    item_id: RawId


class PredictRequest(_Strict):
    pairs: list[Pair] = Field(min_length=1, max_length=MAX_PREDICT_PAIRS)


class Prediction(BaseModel):
    user_id: RawId
    item_id: RawId
    rating: float


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class NewUserRequest(_Strict):
    ratings: dict[str, Rating] = Field(
        min_length=1,
        max_length=MAX_NEW_USER_RATINGS,
        description="the new user's ratings, raw item id -> rating on the model's scale",
    )
    k: int = Field(default=10, ge=1, le=MAX_K)


class ReloadRequest(_Strict):
    model_dir: str | None = Field(
        default=None, description="folder to load; default: the folder being served, read again"
    )


class ErrorItem(BaseModel):
    field: str = Field(description="where: e.g. query.k, body.pairs.3.user_id, path.user_id")
    problem: str


class ErrorBody(BaseModel):
    field: str = Field(description="the first error's field")
    problem: str = Field(description="the first error's problem")
    errors: list[ErrorItem]
