"""Benchmarks: JAX beside its PyTorch reference, run from a repository checkout (not part of the wheel).

    harness.py          timing (interleaved_times), matmul peak, compiled FLOPs, device memory, machine info
    references.py       the other side: torch_reference (imported by name, torch optional), InterFaceGAN, sklearn
    torch_reference.py  torch generators and runners (imports torch)
    suite.py            `python run.py bench`: config.py (settings), models.py (generators under test),
                        tasks.py (sample/score/edit/boundary/invert), scaling.py (devices), report.py (output)
    bench_*.py          one-task studies: `python -m benchmarks.bench_sample` etc., results in results/
"""
