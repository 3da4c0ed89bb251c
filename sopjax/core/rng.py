"""Named random streams.

Every random draw of a run comes from its one seed. JAX keys are derived with
``fold_in(key, stream)``, numpy generators are seeded with ``[seed, stream]``; each stream
has one number, named here, so no two draws share a stream by accident. The numbers are
the ones every recorded result was produced with: changing one changes the runs.
"""

# JAX streams, folded into TrainState.rng.
SHUFFLE = 1         # fold_in(fold_in(rng, SHUFFLE), epoch): the epoch's data order
STRONG_VIEW = 1     # fold_in(fold_in(rng, step), STRONG_VIEW): SOP+'s strong view of the step's batch
# (the weak view's crop and flip use fold_in(rng, step) itself)

# numpy streams, np.random.default_rng([seed, stream]).
FIT_SUBSET = 7      # the training rows memorization and neural collapse are measured on
TEST_SUBSET = 11    # the per-epoch test rows
VAL_SPLIT = 13      # the validation rows (held out or not); also the folds of the cleanlab benchmark
VAL_LABELS = 17     # the validation rows' own synthetic noise draw (the authors noise them anew)
CIFAR100_ASYM = 100  # the class pairs of CIFAR-100 asymmetric noise
