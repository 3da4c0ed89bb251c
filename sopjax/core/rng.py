"""Named random streams.

Every random draw of a run comes from its one seed. JAX keys are derived with
``fold_in(key, stream)``, numpy generators are seeded with ``[seed, stream]``; each stream
has its own number, named here.

The JAX streams form a tree, so no key of one stream equals a key of another: under JAX's
partitionable threefry ``split(k)[i]`` equals ``fold_in(k, i)``, so folding a step or epoch
number straight into the run key would make step t's key equal stream t's base key.

    run key ─ fold_in(SHUFFLE) ─ fold_in(epoch)           the epoch's data order
            └ fold_in(AUGMENT) ─ fold_in(step) = step key
                  step key ─ split → (crop, flip)          the weak view (indices 0, 1)
                  step key ─ fold_in(STRONG_VIEW)          SOP+'s strong view
"""

# JAX streams, folded into TrainState.rng (the run key) or into a step's key.
SHUFFLE = 1         # fold_in(fold_in(rng, SHUFFLE), epoch): the epoch's data order
AUGMENT = 2         # fold_in(fold_in(rng, AUGMENT), step): the step's key
STRONG_VIEW = 2     # fold_in(step key, STRONG_VIEW): beside the weak view's split(step key) = indices 0, 1

# numpy streams, np.random.default_rng([seed, stream]).
FIT_SUBSET = 7      # the training rows memorization and neural collapse are measured on
TEST_SUBSET = 11    # the per-epoch test rows
VAL_SPLIT = 13      # the validation rows (held out or not); also the folds of the cleanlab benchmark
VAL_LABELS = 17     # the validation rows' own synthetic noise draw (the authors noise them anew)
CIFAR100_ASYM = 100  # the class pairs of CIFAR-100 asymmetric noise
