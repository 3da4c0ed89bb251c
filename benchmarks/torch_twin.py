"""A PyTorch twin of the SOP authors' training: their PreActResNet18, the CE, SOP and SOP+ losses,
their optimizers, and their data preparation (each view's normalization, the train/validation
split, CIFAR-10 asymmetric noise), for the parity tests (tests/parity/) and speed comparisons.

Written from the architecture, loss and loaders of github.com/shengliu66/SOP (``model/PreResNet.py``,
``model/loss.py``, ``train.py``, ``trainer/trainer.py``, ``data_loader/data_loaders.py``,
``data_loader/cifar10.py``, ``data_loader/cifar100.py``), not copied: one forward pass over
``[weak; strong]`` for SOP+, SGD(momentum 0.9, coupled weight decay) for the network and
plain SGD at lr_u / lr_v for u, v, both stepped after one backward pass.

Tensors are NCHW float32. :func:`load_flax` copies a sopjax network's variables (NHWC,
HWIO kernels) into the twin; :func:`export_flax` returns the twin's state in sopjax's
layout for comparison. Needs ``torch`` (the ``test`` extra).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-4


def _ch(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class PreActBlock(nn.Module):
    """The authors' block: the shortcut (identity or 1×1 conv) takes relu(bn1(x))."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = out if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet18(nn.Module):
    """conv → BN → ReLU stem, blocks [2, 2, 2, 2], global average pool, linear; channels × width."""

    def __init__(self, num_classes: int = 10, width: float = 1.0):
        super().__init__()
        c = [_ch(64 * 2**i, width) for i in range(4)]
        self.conv1 = nn.Conv2d(3, c[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        cin, layers = c[0], []
        for i in range(4):
            blocks = []
            for j in range(2):
                blocks.append(PreActBlock(cin, c[i], 2 if (j == 0 and i > 0) else 1))
                cin = c[i]
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(c[3], num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(out.mean(dim=(2, 3)))  # = avg_pool2d(out, 4) for 32×32 inputs


# ------------------------------------------------------------------ losses (batch means)


def cross_entropy(logits, y_onehot):
    return F.cross_entropy(logits, y_onehot.argmax(1))


def _sop_terms(logits, y, u_b, v_b):
    U2 = torch.clamp(u_b**2 * y, 0, 1)
    V2 = torch.clamp(v_b**2 * (1 - y), 0, 1)
    pred = torch.clamp(F.softmax(logits, 1) + U2 - V2.detach(), min=EPS)
    pred = torch.clamp(F.normalize(pred, p=1, dim=1, eps=EPS), min=EPS, max=1.0)
    with torch.no_grad():
        hard = F.one_hot(logits.argmax(1), y.shape[1]).float()
    ce = torch.mean(-torch.sum(y * torch.log(pred), dim=-1))
    mse = F.mse_loss(hard + U2 - V2, y, reduction="sum") / len(y)
    return ce, mse, pred


def sop_loss(logits, y, u_b, v_b):
    """CE on φ(softmax + U² − sg(V²)) plus Σ‖onehot(argmax) + U² − V² − y‖²/B."""
    ce, mse, _ = _sop_terms(logits, y, u_b, v_b)
    return ce + mse


def sop_plus_loss(logits_all, y, u_b, v_b, lambda_c: float = 0.9, lambda_b: float = 0.1):
    """SOP on the weak half of ``logits_all = [weak; strong]`` + λ_C KL(sg(p_weak) ‖ p_strong)
    + λ_B (−mean_k log mean_i p̂_ik)."""
    weak, strong = torch.chunk(logits_all, 2)
    ce, mse, pred = _sop_terms(weak, y, u_b, v_b)
    avg = torch.clamp(pred.mean(0), min=EPS, max=1.0)
    balance = -(torch.log(avg) / y.shape[1]).sum()
    kl = F.kl_div(F.log_softmax(strong, 1), F.softmax(weak, 1).detach(), reduction="none").sum(1).mean()
    return ce + mse + lambda_b * balance + lambda_c * kl


# ------------------------------------------------------------------ the trainer


class Twin:
    """Network + u (N, 1), v (N, K) + the authors' two SGD optimizers and per-epoch cosine schedule."""

    def __init__(self, net: nn.Module, num_train: int, num_classes: int, lr: float, weight_decay: float,
                 lr_u: float, lr_v: float, epochs: int, lr_min: float, momentum: float = 0.9):
        self.net = net
        self.u = nn.Parameter(torch.zeros(num_train, 1))
        self.v = nn.Parameter(torch.zeros(num_train, num_classes))
        self.opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.opt_uv = torch.optim.SGD([{"params": [self.u], "lr": lr_u}, {"params": [self.v], "lr": lr_v}],
                                      lr=lr_u, momentum=0, weight_decay=0)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=epochs, eta_min=lr_min)

    def step(self, method: str, x, y_int, idx, x_strong=None, lambda_c=0.9, lambda_b=0.1) -> float:
        """One training step (model.train()); x NCHW float32, y_int (B,) int64, idx (B,) int64."""
        self.net.train()
        y = F.one_hot(y_int, self.v.shape[1]).float()
        if method == "sop_plus":
            loss = sop_plus_loss(self.net(torch.cat([x, x_strong])), y, self.u[idx], self.v[idx], lambda_c, lambda_b)
        elif method == "sop":
            loss = sop_loss(self.net(x), y, self.u[idx], self.v[idx])
        else:
            loss = cross_entropy(self.net(x), y)
        self.opt_uv.zero_grad()
        self.opt.zero_grad()
        loss.backward()
        self.opt_uv.step()
        self.opt.step()
        return float(loss)

    def end_epoch(self):
        self.sched.step()


# ------------------------------------------------------------- weight exchange with sopjax


def _conv_to_torch(k):   # HWIO → OIHW
    return torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(k), (3, 2, 0, 1))))


def _conv_from_torch(w):
    return np.transpose(w.detach().numpy(), (2, 3, 1, 0))


def _pairs(net: PreActResNet18):
    """(flax path, torch module) for every conv, BN and linear of the twin."""
    out = [(("conv1",), net.conv1), (("bn1",), net.bn1), (("linear",), net.linear)]
    for i, layer in enumerate([net.layer1, net.layer2, net.layer3, net.layer4]):
        for j, blk in enumerate(layer):
            pre = f"layer{i + 1}_{j}"
            out += [((pre, "bn1"), blk.bn1), ((pre, "conv1"), blk.conv1), ((pre, "bn2"), blk.bn2),
                    ((pre, "conv2"), blk.conv2)]
            if blk.shortcut is not None:
                out.append(((pre, "shortcut"), blk.shortcut))
    return out


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


@torch.no_grad()
def load_flax(net: PreActResNet18, params: dict, batch_stats: dict) -> None:
    """Copy sopjax ``preact_resnet18`` variables (params["net"]-level dicts) into ``net``."""
    for path, mod in _pairs(net):
        p = _get(params, path)
        if isinstance(mod, nn.Conv2d):
            mod.weight.copy_(_conv_to_torch(p["kernel"]))
        elif isinstance(mod, nn.Linear):
            mod.weight.copy_(torch.from_numpy(np.asarray(p["kernel"]).T.copy()))
            mod.bias.copy_(torch.from_numpy(np.asarray(p["bias"])))
        else:
            s = _get(batch_stats, path)
            mod.weight.copy_(torch.from_numpy(np.asarray(p["scale"])))
            mod.bias.copy_(torch.from_numpy(np.asarray(p["bias"])))
            mod.running_mean.copy_(torch.from_numpy(np.asarray(s["mean"])))
            mod.running_var.copy_(torch.from_numpy(np.asarray(s["var"])))


def export_flax(net: PreActResNet18) -> tuple[dict, dict]:
    """(params, batch_stats) of ``net`` as flat dicts {"path/leaf": numpy array} in sopjax layout."""
    params, stats = {}, {}
    for path, mod in _pairs(net):
        key = "/".join(path)
        if isinstance(mod, nn.Conv2d):
            params[key + "/kernel"] = _conv_from_torch(mod.weight)
        elif isinstance(mod, nn.Linear):
            params[key + "/kernel"] = mod.weight.detach().numpy().T
            params[key + "/bias"] = mod.bias.detach().numpy()
        else:
            params[key + "/scale"] = mod.weight.detach().numpy()
            params[key + "/bias"] = mod.bias.detach().numpy()
            stats[key + "/mean"] = mod.running_mean.numpy()
            stats[key + "/var"] = mod.running_var.numpy()
    return params, stats


# ------------------------------------------------------------------ the authors' recipes

# config_cifar100.json: optimizer SGD(lr 0.02, momentum 0.9, weight_decay 1e-3), CosineAnnealingLR
# (T_max 300, eta_min 2e-4), 300 epochs, batch 128, PreActResNet18, u, v ~ N(0, 1e-8²), loss
# ratio_consistency 0.9, ratio_balance 0.1; the README's commands set lr_u, lr_v and the noise.
AUTHORS_CIFAR100_CONFIG = {"arch": "PreActResNet18", "epochs": 300, "batch_size": 128, "lr": 0.02, "momentum": 0.9,
                           "weight_decay": 1e-3, "T_max": 300, "eta_min": 2e-4, "std": 1e-8,
                           "ratio_consistency": 0.9, "ratio_balance": 0.1}
AUTHORS_README_RUNS = {"sym": {"lr_u": 1.0, "lr_v": 10.0, "percent": 0.5, "asym": False},
                       "asym": {"lr_u": 0.1, "lr_v": 100.0, "percent": 0.4, "asym": True}}


# ------------------------------------------------------------------ the authors' data preparation

# transforms.Normalize(mean, std) of each view in data_loaders.py. The CIFAR-100 loader's
# strong view (transform_train_aug) carries the CIFAR-10 pair; weak view and test images the CIFAR-100 one.
_C10 = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
_C100 = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
VIEW_STATS = {("cifar10", "weak"): _C10, ("cifar10", "strong"): _C10,
              ("cifar100", "weak"): _C100, ("cifar100", "strong"): _C10}


def to_tensor_normalize(images: np.ndarray, dataset: str, view: str) -> torch.Tensor:
    """``ToTensor()`` then ``Normalize`` of ``view`` ("weak" or "strong"): uint8 NHWC → float32 NCHW."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in VIEW_STATS[(dataset, view)])
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - mean) / std


def train_val_split(targets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) as the authors' ``train_val_split``: within each class a
    shuffled order; the whole class trains, and its members past ``int(0.9·N/K)`` also validate."""
    targets = np.asarray(targets)
    num_classes = int(targets.max()) + 1
    cut = int(len(targets) * 0.9 / num_classes)
    train, val = [], []
    for c in range(num_classes):
        order = rng.permutation(np.nonzero(targets == c)[0])
        train.append(order)
        val.append(order[cut:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(val))


def validation_targets(clean_val: np.ndarray, real_noise: bool, noisify) -> np.ndarray:
    """The labels the validation images are scored against: clean for a real (human) label set,
    whose file replaces the training labels only; otherwise the validation set's own call of the
    noise function ``noisify(clean_val)``."""
    return np.array(clean_val) if real_noise else noisify(np.array(clean_val))


# truck → automobile, bird → airplane, cat → dog, dog → cat, deer → horse
_CIFAR10_FLIPS = {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}


def asymmetric_noise_cifar10(labels: np.ndarray, percent: float, rng: np.random.Generator) -> np.ndarray:
    """The authors' CIFAR-10 asymmetric noise, read literally: for class i = 0, 1, …, 9 in turn,
    shuffle the positions whose label is *now* i and relabel the j-th of them while
    j < percent · (their count), where i has a target class."""
    labels = np.array(labels)
    for i in range(10):
        where = np.nonzero(labels == i)[0]
        rng.shuffle(where)
        limit = percent * len(where)
        for j, pos in enumerate(where):
            if j < limit and i in _CIFAR10_FLIPS:
                labels[pos] = _CIFAR10_FLIPS[i]
    return labels
