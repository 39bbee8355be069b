"""Output conversion shared by the dataset loaders."""
import numpy as np

N_CLASSES = 10


def format_split(images, labels, normalize, flatten, one_hot_label, scale):
    """Shared output conversion for the dataset loaders.

    ``images`` is uint8 of shape ``(N, rows, cols)``, ``labels`` uint8 ``(N,)``.
    The results are fresh, writable, C-contiguous arrays.
    """
    n = images.shape[0]
    if normalize:
        x = images.astype(np.float32)
        x /= np.float32(scale)
    else:
        x = images.copy()
    x = x.reshape(n, -1) if flatten else x.reshape(n, 1, *images.shape[1:])
    if one_hot_label:
        t = np.zeros((n, N_CLASSES), dtype=np.float32)
        t[np.arange(n), labels] = 1.0
    else:
        t = labels.copy()
    return x, t
