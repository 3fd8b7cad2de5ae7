"""The fit verdict: underfitting, good fit or overfitting, read off a run's per-epoch metrics.

The lab asks of every run "is the model over- or underfitting?". This module answers with a rule stated
in plain words and the numbers from the curves it used, so a student can check the verdict by eye.
Overfitting is tested first: a model that has memorised its training images is overfitting even if its
training accuracy is still climbing.
"""

import math

# A train-validation accuracy gap above 10 points at the end: the model knows its training images far
# better than unseen ones. Well-fitted small nets on MNIST/CIFAR end within a few points; the lab's
# CIFAR MLP after 50+ epochs ends 20-40 points apart.
GAP_OVERFIT = 0.10
# Validation loss, averaged over the last epochs (one noisy epoch must not decide), more than 20% above its
# lowest value, reached at least 3 epochs before the end: the model got worse on unseen images while
# training went on. Epoch-to-epoch noise of validation loss on these data sets is a few percent.
VAL_LOSS_RISE = 0.20
MIN_EPOCHS_SINCE_BEST = 3
TAIL = 3  # epochs averaged for the "end of training" values and the slope
# Training accuracy under halfway from chance to 100%: the model has not even fit the images it trains on.
LOW_TRAIN_FRACTION = 0.5
# Training loss above 80% of ln(classes), the loss of a uniform guess: it has barely started to learn.
HIGH_LOSS_FRACTION = 0.8
# Training accuracy still rising by over 1 point per epoch at the end while validation loss is at (within
# 2% of) its lowest: training stopped while the model was still learning; more epochs would help.
STILL_RISING = 0.01
NEAR_BEST = 0.02

RULE = (
    "Overfitting if the train-validation accuracy gap at the last epoch is over {gap:.0f} points, or if "
    "validation loss was lowest at least {since} epochs before the end and its mean over the last {tail} "
    "epochs is more than {rise:.0f}% above that lowest value. Otherwise underfitting if training accuracy is "
    "under {low:.1%} (halfway from chance, {chance:.1%}, to 100%), or training loss is above {loss:.0f}% of "
    "a uniform guess's ln({classes}) = {lnc:.2f}, or training accuracy was still rising by more than "
    "{slope:.0f} point per epoch over the last {tail} epochs while validation loss was within {near:.0f}% of "
    "its lowest. Otherwise a good fit."
)


def rule_text(num_classes: int) -> str:
    chance = 1 / num_classes
    return RULE.format(gap=GAP_OVERFIT * 100, since=MIN_EPOCHS_SINCE_BEST, tail=TAIL, rise=VAL_LOSS_RISE * 100,
                       low=chance + LOW_TRAIN_FRACTION * (1 - chance), chance=chance, loss=HIGH_LOSS_FRACTION * 100,
                       classes=num_classes, lnc=math.log(num_classes), slope=STILL_RISING * 100,
                       near=NEAR_BEST * 100)


def evidence(history: list, num_classes: int) -> dict:
    """The numbers the rule reads, from metrics.csv rows (dicts with loss, accuracy, val_loss, val_accuracy)."""
    last, tail = history[-1], history[-TAIL:]
    val_losses = [h["val_loss"] for h in history]
    best = min(range(len(history)), key=lambda i: val_losses[i])  # first epoch at the minimum
    after = val_losses[best + 1:][-TAIL:]  # the last epochs, those after the lowest one
    slope = (tail[-1]["accuracy"] - tail[0]["accuracy"]) / (len(tail) - 1) if len(tail) > 1 else None
    return {
        "epochs": len(history),
        "train_accuracy": last["accuracy"], "val_accuracy": last["val_accuracy"],
        "gap": last["accuracy"] - last["val_accuracy"],
        "best_val_loss_epoch": best + 1, "best_val_loss": val_losses[best], "last_val_loss": val_losses[-1],
        "val_loss_rise": sum(after) / len(after) / val_losses[best] - 1 if after else 0.0,
        "train_accuracy_slope": slope,  # per epoch over the last TAIL epochs; None after a single epoch
        "train_loss": last["loss"], "chance_accuracy": 1 / num_classes, "chance_loss": math.log(num_classes),
    }


def verdict(history: list, num_classes: int = 10):
    """(label, rule, evidence): label is "overfitting", "underfitting", "good fit", or "no verdict" when
    there is no history or no validation metrics to judge by."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    rule = rule_text(num_classes)
    if not history or not all("val_loss" in h and "val_accuracy" in h for h in history):
        return "no verdict", "The verdict needs validation loss and accuracy for every epoch (val_split > 0).", {}
    ev = evidence(history, num_classes)
    ev["reasons"] = reasons = []
    if ev["gap"] > GAP_OVERFIT:
        reasons.append(f"training accuracy is {ev['gap'] * 100:.1f} points above validation accuracy at the "
                       f"last epoch")
    if ev["epochs"] - ev["best_val_loss_epoch"] >= MIN_EPOCHS_SINCE_BEST and ev["val_loss_rise"] > VAL_LOSS_RISE:
        reasons.append(f"validation loss was lowest at epoch {ev['best_val_loss_epoch']} of {ev['epochs']} and "
                       f"has risen {ev['val_loss_rise']:.0%} since")
    if reasons:
        return "overfitting", rule, ev
    chance = ev["chance_accuracy"]
    if ev["train_accuracy"] < chance + LOW_TRAIN_FRACTION * (1 - chance):
        reasons.append(f"training accuracy is only {ev['train_accuracy']:.1%} (chance is {chance:.1%})")
    if ev["train_loss"] > HIGH_LOSS_FRACTION * ev["chance_loss"]:
        reasons.append(f"training loss {ev['train_loss']:.3f} is still close to a uniform guess's "
                       f"{ev['chance_loss']:.3f}")
    slope = ev["train_accuracy_slope"]
    if slope is not None and slope > STILL_RISING and ev["last_val_loss"] <= ev["best_val_loss"] * (1 + NEAR_BEST):
        reasons.append(f"training accuracy was still rising {slope:.1%} per epoch at the end and validation loss "
                       f"was still at its best: more epochs would help")
    if reasons:
        return "underfitting", rule, ev
    reasons.append(f"training and validation accuracy end {ev['gap'] * 100:.1f} points apart, validation loss has "
                   f"not climbed far from its lowest (epoch {ev['best_val_loss_epoch']} of {ev['epochs']}), and "
                   f"training accuracy is {ev['train_accuracy']:.1%}"
                   + ("" if slope is None else f", rising {slope * 100:.2f} points per epoch"))
    return "good fit", rule, ev
