import subprocess
import sys
from pathlib import Path


def test_mechscope_run_prints_top_predictions(small_model, small_checkpoint):
    _, directory = small_checkpoint
    out = subprocess.run([str(Path(sys.executable).parent / "mechscope"), "run", "Hello there", "--model",
                          str(directory), "--top-k", "3"], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert "3 tokens" in lines[1]  # <|endoftext|> is prepended by default, as in training
    rows = lines[-3:]
    import torch
    from mechscope.inference import gpt2_tokenizer
    tok = gpt2_tokenizer()
    with torch.no_grad():
        probs = small_model(torch.tensor([tok.encode("Hello there", prepend_bos=True)]))[0, -1].softmax(-1)
    best = probs.topk(3)
    for row, p, i in zip(rows, best.values.tolist(), best.indices.tolist()):
        assert str(i) in row.split() and f"{p:.2%}" in row


def test_mechscope_run_reports_bad_model_cleanly(tmp_path):
    proc = subprocess.run([str(Path(sys.executable).parent / "mechscope"), "run", "Hi", "--model", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no config.json" in proc.stderr and "Traceback" not in proc.stderr
