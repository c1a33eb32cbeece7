"""The MLflow pyfunc that serves a registered SLAM delta: base model + delta, greedy generation.

    model = mlflow.pyfunc.load_model("models:/slam@champion")
    model.predict({"question": ["Janet hat 3 Äpfel und kauft 5 dazu. Wie viele hat sie?"]})  # -> ["… 8."]
    model.predict(pd.DataFrame({"question": [...]}), params={"max_new_tokens": 96})

Logged as MLflow "models from code" (this file is the model's code; no pickled object), with the delta
dir as its artifact and the base model URI in model_config (override it at load time:
`mlflow.pyfunc.load_model(uri, model_config={"base": "/models/base"})`). The signature says
question (string) -> answer (string), with `max_new_tokens` as a parameter. The base is resolved like
everywhere else (slam.models.resolve_model) and answers come from the same generation path evaluation
scored (slam.generation: stop strings included).
"""

from __future__ import annotations

from typing import Any

import mlflow.models
import mlflow.pyfunc

DEFAULT_MAX_NEW_TOKENS = 160
INPUT_EXAMPLE = {"question": ["Janet has 3 apples and buys 5 more. How many apples does she have now?",
                              "Janet hat 3 Äpfel und kauft 5 dazu. Wie viele Äpfel hat sie jetzt?"]}


def signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", "question")]),
                          outputs=Schema([ColSpec("string", "answer")]),
                          params=ParamSchema([ParamSpec("max_new_tokens", "long", DEFAULT_MAX_NEW_TOKENS)]))


def questions(model_input: Any) -> list[str]:
    """The questions in a DataFrame / dict with a `question` column, or a plain list of strings."""
    if hasattr(model_input, "columns"):
        col = "question" if "question" in model_input.columns else model_input.columns[0]
        values = model_input[col].tolist()
    elif isinstance(model_input, dict):
        values = model_input.get("question", [])
    else:
        values = list(model_input)
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:  # a dict input arrives as one row holding the whole list
        out.extend(str(x) for x in v) if isinstance(v, (list, tuple)) else out.append(str(v))
    return out


class SlamDeltaModel(mlflow.pyfunc.PythonModel):
    """Questions in, generated answers out (prompt template from model_config, default alpaca)."""

    # The explicit signature is the schema (DataFrame, dict or list in): no type-hint validation or its warnings
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from slam.delta import load_model_with_delta

        cfg = context.model_config or {}
        self.template = cfg.get("template", "alpaca")
        self.max_new_tokens = int(cfg.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        self.model, self.tokenizer = load_model_with_delta(cfg["base"], context.artifacts["delta"])
        self.model.eval()

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[str]:
        from slam.generation import generate

        max_new = int((params or {}).get("max_new_tokens") or self.max_new_tokens)
        completions, _ = generate(self.model, self.tokenizer, questions(model_input), max_new_tokens=max_new,
                                  template=self.template)
        return completions


mlflow.models.set_model(SlamDeltaModel())  # what MLflow loads: this file is the model's code
