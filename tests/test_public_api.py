"""`import wildfeedback` exports every step by name, lazily, and each name is the thing
it says (a function or a type, never a module that happens to share its name)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import wildfeedback


def test_every_exported_name_resolves_to_a_function_or_a_type() -> None:
    for name in wildfeedback.__all__:
        value = getattr(wildfeedback, name)
        if name == "__version__":
            assert isinstance(value, str) and value
            continue
        assert inspect.isfunction(value) or inspect.isclass(value), f"wildfeedback.{name} is {value!r}"
    assert {"ingest", "detect_signals", "run_pipeline", "train", "make_backend", "make_detector"} <= set(dir(wildfeedback))


def test_steps_are_callable_even_after_their_modules_are_imported() -> None:
    import wildfeedback.io.ingest  # noqa: F401  (once bound the module over the name)
    import wildfeedback.training.trainer  # noqa: F401
    from wildfeedback import ingest, train

    assert callable(ingest) and ingest.__module__ == "wildfeedback.io.ingest"
    assert callable(train) and train.__module__ == "wildfeedback.training.trainer"


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        wildfeedback.no_such_step  # noqa: B018
    except AttributeError as error:
        assert "no_such_step" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_light() -> None:
    code = "import sys, wildfeedback; print(any(m in sys.modules for m in ('torch', 'transformers', 'sklearn')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
