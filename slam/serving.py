"""The MLflow pyfunc that serves a registered SLAM delta: base model + delta, greedy generation.

    model = mlflow.pyfunc.load_model("models:/slam@champion")
    model.predict(["Janet hat 3 Äpfel und kauft 5 dazu. Wie viele hat sie?"])   # -> ["… The answer is 8."]

`slam.registry` saves it with the delta dir as its artifact and the base model URI in model_config
(override it at load time: `mlflow.pyfunc.load_model(uri, model_config={"base": "/models/base"})`). The
base is resolved like everywhere else (slam.models.resolve_model) and answers come from the same
generation path evaluation scored (slam.generation: stop strings included).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc


class SlamDeltaModel(mlflow.pyfunc.PythonModel):
    """Questions in, generated answers out (prompt template from model_config, default alpaca)."""

    def load_context(self, context: Any) -> None:
        from slam.delta import load_model_with_delta

        cfg = context.model_config or {}
        self.template = cfg.get("template", "alpaca")
        self.max_new_tokens = int(cfg.get("max_new_tokens", 160))
        self.model, self.tokenizer = load_model_with_delta(cfg["base"], context.artifacts["delta"])
        self.model.eval()

    def predict(self, context: Any, model_input: list[str], params: dict[str, Any] | None = None) -> list[str]:
        from slam.generation import generate

        max_new = int((params or {}).get("max_new_tokens", self.max_new_tokens))
        completions, _ = generate(self.model, self.tokenizer, [str(q) for q in model_input],
                                  max_new_tokens=max_new, template=self.template)
        return completions
