"""Stage 4, learning: everything that trains, and the heads it trains.

    toolkit.py      what the learners share: which windows are read, class weights, the
                    loss, the schedule, a head built from the settings, metrics.json
    metrics.py      accuracy, macro-F1, MCC, AUROC, confusion matrix of one split
    windowsets.py   WindowSets: sequences as batches of their window vectors
    heads.py        the heads (hierarchical, mean): build, save, load, check, predict
    model.py        SequenceClassifier: an encoder and a head, for both learning paths
    frozen.py       a head trained on frozen window vectors (rule train_head)
    finetune.py     the encoder and a head trained together (rule finetune)
    pretrain.py     masked-LM pretraining on genomes (rule pretrain)
    baselines.py    the k-mer and GC logistic regressions on the heads' splits (rule baselines)
    checkpoint.py   per-epoch checkpoints, so a killed job resumes

Contract: a head folder (head.safetensors + head.json naming its classes, shape and the
embedding space it reads), metrics.json per head, baselines/metrics.json, and model
folders (pretrain/encoder, finetune/encoder) in their hub layout.
"""
