"""Response models: the probability of an outcome under each action, for the choose stage.

A scorer (engine/scorers) predicts what happens if nothing changes; a response model predicts
what happens *under an action* (an offer at a discount, a term, an upsell, a human touch), so
that the choose stage can value an action by what it adds over doing nothing."""
from .model import FORMAT, ResponseModel, ResponseModels, load
from .errors import ResponseModelError

__all__ = ["FORMAT", "ResponseModel", "ResponseModels", "ResponseModelError", "load"]
