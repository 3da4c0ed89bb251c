"""SOP in your own training loop: a flax MLP on 512 synthetic samples, 40% of their labels flipped."""
import flax.linen as nn
import jax
import optax

import sopjax


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(nn.relu(nn.Dense(512)(nn.relu(nn.Dense(512)(x)))))


def run(tables=True, n=512, steps=500):  # tables=False: the same loop with cross-entropy
    k = jax.random.split(jax.random.PRNGKey(0), 6)
    y_true = jax.random.randint(k[0], (n,), 0, 10)
    x = jax.random.normal(k[1], (10, 16))[y_true] + jax.random.normal(k[2], (n, 16))
    flip = jax.random.bernoulli(k[3], 0.4, (n,))
    y = (y_true + flip * jax.random.randint(k[4], (n,), 1, 10)) % 10  # a flipped label moves to another class
    model, tx = MLP(), sopjax.sop_optimizer(optax.adam(1e-3), lr_u=100.0, lr_v=100.0)
    params = {"net": model.init(k[5], x[:1])["params"], "tables": sopjax.init_tables(k[5], n, 10)}
    def loss_fn(p, i):  # i: the batch's dataset positions, which pick the tables' rows
        logits, u, v = model.apply({"params": p["net"]}, x[i]), p["tables"]["u"][i], p["tables"]["v"][i]
        return sopjax.sop_loss(logits, y[i], u, v)[0] if tables else sopjax.cross_entropy(logits, y[i])
    @jax.jit
    def step(p, opt_state, key):
        updates, opt_state = tx.update(jax.grad(loss_fn)(p, jax.random.choice(key, n, (128,), False)), opt_state, p)
        return optax.apply_updates(p, updates), opt_state
    opt_state = tx.init(params)
    for t in range(steps):
        params, opt_state = step(params, opt_state, jax.random.fold_in(k[0], t))
    score = sopjax.noise_score(params["tables"]["u"], params["tables"]["v"], y)  # ‖s_i‖₁: high = suspect label
    memorized = (model.apply({"params": params["net"]}, x[flip]).argmax(-1) == y[flip]).mean()
    return float(memorized), float(score[flip].mean()), float(score[~flip].mean())  # memorized, mean scores


if __name__ == "__main__":
    (sop, flipped, kept), (ce, _, _) = run(True), run(False)
    print(f"memorized flipped labels: SOP {sop:.2f}, CE {ce:.2f}; noise score flipped {flipped:.2f}, kept {kept:.2f}")
