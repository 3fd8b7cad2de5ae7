"""Where each setting of the lab's presets comes from: a cell of the lab's code (Keras' defaults included, where
the cell leaves a setting to them) or cnnlab's own choice. `cnnlab presets NAME` and `cnnlab summary` print it."""

KERAS_INIT = "Keras' default for every layer: glorot_uniform kernels, zero biases"
HOLD_OUT = ("cnnlab: a stratified, seeded 10% hold-out of the training images; the lab's code validates on the test "
            "set, which `cnnlab lab` and --validate-on test do")
PRECISION = "cnnlab: bf16 autocast where the CPU or GPU computes it natively, else fp32 (the lab: Keras' float32)"

ORIGINS = {
    "mlp": {
        "layers": "lab 3.2: Dense(1024, relu) on x.reshape(-1, 3072), Dense(10, softmax)",
        "epochs": "lab 3.2: epochs = 50",
        "batch_size": "lab 3.2: batch_size = 128",
        "optimizer.name": "lab 3.2: SGD()",
        "optimizer.lr": "lab 3.2: SGD() - Keras' default learning rate",
        "optimizer.momentum": "lab 3.2: SGD() - Keras' default, no momentum (the answer table's 0.9 is not in the code)",
        "optimizer.decay": "lab 3.2: SGD() - Keras' default, no decay (the answer table's 0.01 is not in the code)",
        "init": KERAS_INIT,
        "checkpoint.save_best_only": "lab 3.2: no ModelCheckpoint, the model is the last epoch's",
        "val_split": HOLD_OUT,
        "precision": PRECISION,
    },
    "mlp-deep": {
        "layers": "lab 3.3: Dense 1024, 512, 256 (relu), Dense(10, softmax)",
        "epochs": "lab 3.3: epochs = 100",
        "batch_size": "lab 3.3: batch_size = 128",
        "optimizer.name": "lab 3.3: Adam(learning_rate=0.001)",
        "optimizer.lr": "lab 3.3: Adam(learning_rate=0.001)",
        "optimizer.epsilon": "lab 3.3: Adam() - Keras' default epsilon",
        "init": KERAS_INIT,
        "checkpoint.save_best_only": "lab 3.3: no ModelCheckpoint, the model is the last epoch's",
        "val_split": HOLD_OUT,
        "precision": PRECISION,
    },
    "mnist-cnn": {
        "layers": "lab 4.2: buildmodel(): Conv2D 32 5x5 same, MaxPooling2D(2, strides=2), Conv2D 64, 128, 64 5x5, "
                  "MaxPooling2D, Flatten, Dense(1024), Dropout(0.1), Dense(10, softmax)",
        "epochs": "lab 4.4: train(model, ..., 5, ...)",
        "batch_size": "lab 4.3: fit(batch_size=32)",
        "optimizer.name": "lab 4.3: SGD(lr=0.01, momentum=0.7)",
        "optimizer.lr": "lab 4.3: SGD(lr=0.01, momentum=0.7)",
        "optimizer.momentum": "lab 4.3: SGD(lr=0.01, momentum=0.7)",
        "early_stopping.min_delta": "lab 4.3: EarlyStopping(min_delta=0.001, patience=10)",
        "early_stopping.patience": "lab 4.3: EarlyStopping(min_delta=0.001, patience=10)",
        "early_stopping.monitor": "lab 4.3: EarlyStopping() - Keras' default monitor",
        "checkpoint.save_best_only": "lab 4.3: ModelCheckpoint(model_name) - Keras' default, saved every epoch",
        "init": KERAS_INIT,
        "val_split": HOLD_OUT,
        "precision": PRECISION,
    },
    "cifar-cnn": {
        "layers": "lab 5: three blocks of Conv2D 3x3 same + BatchNormalization (32, 64, 128) with MaxPooling2D and "
                  "Dropout 0.3/0.5/0.5, Flatten, Dense(128), BatchNormalization, Dropout(0.5), Dense(10, softmax)",
        "epochs": "lab 5: fit(epochs=100)",
        "batch_size": "lab 5: fit(batch_size=64)",
        "val_split": "lab 5: fit(validation_split=0.2) (Keras takes the last 20% of the arrays; cnnlab a stratified, "
                     "seeded 20%)",
        "optimizer.name": "lab 5: Adam(learning_rate=0.001)",
        "optimizer.lr": "lab 5: Adam(learning_rate=0.001)",
        "early_stopping.patience": "lab 5: EarlyStopping(monitor='val_loss', patience=10, restore_best_weights=True)",
        "early_stopping.restore_best_weights": "lab 5: EarlyStopping(..., restore_best_weights=True)",
        "checkpoint.save_best_only": "lab 5: ModelCheckpoint('cifar.h5', monitor='val_loss', save_best_only=True)",
        "init": KERAS_INIT,
        "precision": PRECISION,
    },
}


def setting(cfg, key: str):
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def origins(name: str, cfg) -> list:
    """(setting, its value in `cfg`, where it comes from) for a lab preset; [] for any other."""
    return [(key, f"{len(cfg.layers)} layers" if key == "layers" else setting(cfg, key), source)
            for key, source in ORIGINS.get(name, {}).items()]
