"""The fast LSTM engine, behind two functions: `lstm_forward` and `lstm_backward`.

It computes what `numpy_lstm.reference` computes (and is tested against it in float64), faster.
How the parts fit, from the top:
- `batch`: a pass over a batch cuts its rows into parts (`rows`) and puts their results back;
- `cores`: how many parts, or BLAS's threads, or a side thread, for the batch's shape;
- `workers`: forked processes that run the parts beyond the first, through pipes and shared
  memory (`mailbox`), replaced when one is lost;
- `forward`, `backward`: the time loops on one part, laid out for speed, with subnormals flushed
  to zero meanwhile (`fpu`), block matmuls on a second thread where it pays (`sidethread`), and
  large buffers reused from pass to pass (`spare`).
docs/engine.md has each speed trick: what it computes, why it is correct, what it bought.

Layout, as in Keras: kernel (E, 4H), recurrent_kernel (H, 4H), bias (4H,), gate blocks i, f, c, o.
Shapes: B batch rows, T time steps, E input features, H units.
"""
from .batch import Workspace, lstm_backward, lstm_forward
from .cores import get_num_processes, get_num_threads, set_num_processes, set_num_threads, strategy
from .workers import WorkerLost, start_workers

__all__ = ["WorkerLost", "Workspace", "get_num_processes", "get_num_threads", "lstm_backward", "lstm_forward",
           "set_num_processes", "set_num_threads", "start_workers", "strategy"]
