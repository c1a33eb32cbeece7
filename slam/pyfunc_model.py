"""The MLflow pyfunc that serves a registered SLAM delta: base model + delta, greedy generation.

    model = mlflow.pyfunc.load_model("models:/slam@champion")
    model.predict(["Janet hat 3 Äpfel und kauft 5 dazu. Wie viele hat sie?"])   # -> ["… The answer is 8."]

`slam.registry` saves it with the delta dir as its artifact and the base model path in model_config
(override it at load time: `mlflow.pyfunc.load_model(uri, model_config={"base": "/models/base"})`).
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
        import torch

        from slam.prompts import format_prompt

        max_new = int((params or {}).get("max_new_tokens", self.max_new_tokens))
        prompts = [format_prompt(self.tokenizer, str(q), self.template) for q in model_input]
        self.tokenizer.padding_side = "left"
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
