"""What a run's settings ask of the machine's memory, known before any data is read.

`check_fits` refuses, in one line giving the estimate, a run whose settings cannot fit in the
machine's physical memory: without it such a run reads and cleans the data first, for a minute,
and then dies of a MemoryError. The estimate counts only the arrays the settings size (the
reviews' ids, the weights and Adam's two copies of them, one training batch's forward cache;
the best epoch's weights stay on disk), never the reviews' text: it is a floor, so a run it
refuses cannot run, and a run it lets through may still need more.
"""
import os

from .errors import NumpyLSTMError

IMDB_TRAIN = IMDB_TEST = 25_000         # reviews in each official split
# Per row, step and unit of each LSTM direction, the forward pass keeps about eight float32 for
# the backward: the four gates, the cell state and its tanh, the hidden state, the mask's copy.
CACHE_FLOATS_PER_UNIT = 8


def physical_bytes():
    """The machine's physical memory in bytes (os.sysconf), None where the system does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def file_limit():
    """The most bytes the arrays of one file we read may declare: half the machine's memory
    (16 GiB where the system does not say)."""
    return (physical_bytes() or 32 << 30) // 2


def weight_count(config):
    """Number of weights of config's model (each member of an ensemble has as many)."""
    directions = 2 if config.bidirectional else 1
    width = directions * config.units
    per_layer = [directions * 4 * config.units * ((config.embed_dim if k == 0 else width) + config.units + 1)
                 for k in range(config.num_layers)]
    return (config.vocab_size + config.bigram_buckets) * config.embed_dim + sum(per_layer) + width + 1


def estimate_bytes(config):
    """A floor of the bytes a run of `config` (a TrainConfig) holds at its peak: float32 weights,
    int32 ids."""
    reviews = IMDB_TRAIN if config.per_class is None or config.unlabeled else min(2 * config.per_class, IMDB_TRAIN)
    tested = 0 if config.test_limit == 0 else min(config.test_limit or IMDB_TEST, IMDB_TEST)
    ids = 4 * config.maxlen * (reviews + tested)
    # The models kept (each member of an ensemble), and Adam's moments of one
    weights = 4 * weight_count(config) * (config.ensemble + 2)
    directions = 2 if config.bidirectional else 1
    batch = min(config.batch_size, reviews)
    cache = 4 * batch * config.maxlen * (CACHE_FLOATS_PER_UNIT * config.units * directions * config.num_layers
                                         + 2 * config.embed_dim)
    return ids + weights + cache + pretraining_bytes(config, batch, directions)


def pretraining_bytes(config, batch, directions):
    """What --pretrain-epochs adds: the word predictors (V x (H + 1) per direction) with their
    gradients and Adam's two moments, and a batch's scores of every position against K + 1 words,
    with the two temporaries of its softmax."""
    if not config.pretrain_epochs:
        return 0
    predictors = 4 * 4 * directions * config.vocab_size * (config.units + 1)
    scores = 3 * 4 * batch * config.maxlen * (config.pretrain_samples + 1)
    return predictors + scores


def size_words(n):
    """Bytes in words: "1.6 TB", "310 MB"."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.{1 if n < 10 * scale else 0}f} {unit}"
    return f"{n} bytes"


def check_fits(config, available=None):
    """Refuse `config` in one line when estimate_bytes passes the machine's memory (`available`
    bytes, by default physical_bytes()); nothing is checked where the system does not say."""
    available = physical_bytes() if available is None else available
    needed = estimate_bytes(config)
    if available is not None and needed > available:
        raise NumpyLSTMError(f"these settings need at least {size_words(needed)} of memory and this machine has "
                             f"{size_words(available)}: make --vocab-size, --embed-dim, --units, --num-layers, "
                             f"--maxlen, --batch-size or --ensemble smaller")
    return needed

