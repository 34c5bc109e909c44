"""Stage 4, learning: everything that trains, and the heads it trains.

    toolkit.py      what the learners share: which windows are read, the schedule, when an
                    epoch is better, the spread over seeds, a head built from the settings,
                    metrics.json
    tasks/          what a head learns, one module per heads.task (classification,
                    regression, multilabel): loss, outputs, validation measure, metrics,
                    linear baselines, prediction columns
    metrics.py      how metrics and baselines are named in printed lines; the model choice
    windowsets.py   WindowSets: sequences as batches of their window vectors
    heads.py        the heads (hierarchical, mean): build, save, load, check, predict
    model.py        SequenceClassifier: an encoder and a head, for both learning paths
    frozen.py       a head trained on frozen window vectors (rule train_head)
    finetune.py     the encoder and a head trained together (rule finetune)
    pretrain.py     masked-LM pretraining on genomes (rule pretrain)
    baselines.py    the k-mer, k-mer + LM and GC linear models on the heads' splits, and the
                    leak check (rule baselines)
    checkpoint.py   per-epoch checkpoints, so a killed job resumes

Contract: a head folder (head.safetensors + head.json naming its outputs, its task and its
state, its shape and the embedding space it reads), metrics.json per head,
baselines/metrics.json, and model folders (pretrain/encoder, finetune/encoder) in their hub
layout.
"""
