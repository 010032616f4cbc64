"""The bench's peer: the same MiniLM-L6 in Hugging Face transformers on PyTorch (CPU).

Runs in its own virtualenv (torch + transformers + accelerate, made by `make bench`), so it imports
nothing of this project. Prints one JSON line:
    forward      titles/s of the raw forward pass (pre-tokenized, sorted by length, batch 32,
                 padded per batch), and the p50 ms of one title
    train        examples/s of transformers' Trainer (dynamic padding, batch 32), after warm-up

    python hf_peer.py --model-dir <folder with config.json, model.safetensors, vocab.txt>
                      --titles test.csv --train-file train.csv [--train-steps 45]

With --print-steps (and no --titles) it only trains, printing "step N" after each step, for the
bench's turn-taking timer (interleave.py), which pauses it and stops it; with --titles and
--forward-steps BATCHES it only runs the raw forward, "step N" after every BATCHES batches.
"""
import argparse
import csv
import json
import statistics
import time


def read_csv(path, label_column=None):
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    texts = [row["post"] for row in rows]
    return (texts, [row[label_column] for row in rows]) if label_column else texts


def encode(tokenizer, titles):
    return [tokenizer(title, truncation=True, max_length=128)["input_ids"] for title in titles]


def sorted_batches(encoded, batch_size):
    """(ids, mask) tensors: the encoded titles sorted by length, cut into batches, each padded to its longest."""
    import torch
    encoded = sorted(encoded, key=len)
    batches = []
    for start in range(0, len(encoded), batch_size):
        chosen = encoded[start:start + batch_size]
        width = max(len(ids) for ids in chosen)
        ids = torch.zeros((len(chosen), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, x in enumerate(chosen):
            ids[row, :len(x)] = torch.tensor(x)
            mask[row, :len(x)] = 1
        batches.append((ids, mask))
    return batches


def forward_steps(model, tokenizer, titles, batch_size, batches_per_step):
    """Endless raw forward passes over the sorted batches, visited in a fixed shuffled order (so that
    any stretch of steps sees short and long titles alike); "step N" after each `batches_per_step`."""
    import random
    import torch
    batches = sorted_batches(encode(tokenizer, titles), batch_size)
    batches = [batch for batch in batches if len(batch[0]) == batch_size]  # full batches: steps x size = titles
    random.Random(0).shuffle(batches)
    step, at = 0, 0
    with torch.inference_mode():
        while True:
            for _ in range(batches_per_step):
                ids, mask = batches[at % len(batches)]
                model(input_ids=ids, attention_mask=mask).logits.softmax(-1)
                at += 1
            step += 1
            print("step %d" % step, flush=True)


def forward_rates(model, tokenizer, titles, batch_size):
    import torch
    encoded = encode(tokenizer, titles)
    batches = sorted_batches(encoded, batch_size)
    with torch.inference_mode():
        model(input_ids=batches[0][0], attention_mask=batches[0][1])  # warm-up
        started = time.perf_counter()
        for ids, mask in batches:
            model(input_ids=ids, attention_mask=mask).logits.softmax(-1)
        rate = len(titles) / (time.perf_counter() - started)
        one = torch.tensor([encoded[0]])
        times = []
        for _ in range(100):
            started = time.perf_counter()
            model(input_ids=one, attention_mask=torch.ones_like(one)).logits.softmax(-1)
            times.append((time.perf_counter() - started) * 1000.0)
    return rate, statistics.median(times)


def trainer_rate(model_dir, tokenizer, train_file, steps, batch_size, print_steps=False):
    """examples/s of transformers' Trainer after the first third of the steps (warm-up)."""
    import torch
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments)

    texts, labels = read_csv(train_file, "tags")
    names = sorted(set(labels))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(names))
    encoded = [dict(tokenizer(text, truncation=True, max_length=128), labels=names.index(label))
               for text, label in zip(texts[:steps * batch_size], labels[:steps * batch_size])]
    if print_steps:
        encoded = encoded[:len(encoded) - len(encoded) % batch_size]  # full batches only: steps/s x batch = examples/s
    marks = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks[state.global_step] = time.perf_counter()
            if print_steps:
                print("step %d" % state.global_step, flush=True)

    arguments = TrainingArguments(output_dir="/tmp/hf-peer-trainer", per_device_train_batch_size=batch_size,
                                  max_steps=steps, learning_rate=1e-4, report_to=[], save_strategy="no",
                                  logging_strategy="no", use_cpu=True, dataloader_num_workers=0, seed=0)
    trainer = Trainer(model=model, args=arguments, train_dataset=encoded,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=[Clock()])
    torch.manual_seed(0)
    trainer.train()
    first = steps // 3
    return (steps - first) * batch_size / (marks[steps] - marks[first])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--titles", default=None)
    parser.add_argument("--train-file", default=None)
    parser.add_argument("--train-steps", type=int, default=45)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--print-steps", action="store_true")
    parser.add_argument("--forward-steps", type=int, default=0, metavar="BATCHES",
                        help="with --titles: endless raw forward passes, 'step N' after each BATCHES batches")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if args.titles and args.forward_steps:
        model = AutoModelForSequenceClassification.from_pretrained(args.model_dir, num_labels=20).eval()
        forward_steps(model, tokenizer, read_csv(args.titles), args.batch_size, args.forward_steps)
    if args.titles:
        model = AutoModelForSequenceClassification.from_pretrained(args.model_dir, num_labels=20).eval()
        result["forward_titles_per_s"], result["one_title_p50_ms"] = forward_rates(
            model, tokenizer, read_csv(args.titles), args.batch_size)
    if args.train_file:
        result["train_examples_per_s"] = trainer_rate(args.model_dir, tokenizer, args.train_file,
                                                      args.train_steps, args.batch_size, args.print_steps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
