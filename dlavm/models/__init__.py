"""Built-in model recipes, user model loading (``file.py:factory``) and a recipe as graph IR (``import_model``)."""
from .graph import ImportResult, import_model
from .registry import RECIPES, ModelLoadError, ModelNotFound, Recipe, check_max_seq, list_recipes, load_model
from .spec import ModelSpec

__all__ = ["RECIPES", "ModelNotFound", "ModelLoadError", "check_max_seq", "Recipe", "list_recipes", "load_model",
           "ModelSpec", "ImportResult", "import_model"]
