"""Built-in model recipes and user model loading (``file.py:factory``)."""
from .registry import RECIPES, ModelNotFound, Recipe, list_recipes, load_model
from .spec import ModelSpec

__all__ = ["RECIPES", "ModelNotFound", "Recipe", "list_recipes", "load_model", "ModelSpec"]
