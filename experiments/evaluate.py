"""Evaluate one pruning method at one FLOPs budget (top-1/top-5, GFLOPs, img/s).

`python -m experiments.evaluate --config=configs/eval.py:runlocal --workdir=/tmp/eval`
writes `<workdir>/<method>_<gflops>g.json`, appends a row to `<workdir>/results.csv` and
logs the scalars with clu; the last line is `top1=<x>`. See configs/eval.py.
"""

from absl import flags
from ml_collections import config_flags

from experiments import cli, common
from ztprune_jax.eval import eval_lib

_CONFIG = config_flags.DEFINE_config_file("config", "configs/eval.py", "Evaluation config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the record, CSV and summaries go.")

COLUMNS = (
  "method", "budget_gflops", "r", "gflops", "overhead_gflops", "total_gflops", "top1", "top5",
  "img_per_s", "num_examples", "eval_seconds", "model_name", "weights", "dataset", "schedule",
)  # fmt: skip


def main(argv):
  del argv
  c, workdir = common.start(_CONFIG, _WORKDIR)
  model = eval_lib.build_model(c)
  eval_lib.schedule_for(c, model, c.method)  # a bad method or budget fails before any work
  loader, data_desc = eval_lib.build_loader(c, model)
  params, weights = eval_lib.load_params(c, model)
  print(f"model     {c.model_name} {eval_lib.model_overrides(c)}")
  print(f"weights   {weights}")
  print(f"data      {data_desc}")
  record = eval_lib.run_point(c, model, params, loader, c.method)
  record.update(model_name=c.model_name, weights=weights, dataset=data_desc)
  name = f"{c.method}_{record['gflops']:.4g}g.json"
  eval_lib.write_json(f"{workdir}/{name}", {**record, "config": c.to_dict()})
  eval_lib.append_csv(f"{workdir}/{c.results_file}", record, COLUMNS)
  writer, tensorboard = eval_lib.metric_writer(workdir, c.tensorboard)
  step = int(round(record["gflops"] * 1e3))  # x-axis: blocks-only MFLOPs
  scalars = {f"{c.method}/{k}": record[k] for k in ("top1", "top5", "gflops")}
  if record["img_per_s"] is not None:
    scalars[f"{c.method}/img_per_s"] = record["img_per_s"]
  writer.write_scalars(step, scalars)
  writer.close()
  print(f"schedule  {record['schedule']} (r={record['r']})")
  print(f"gflops    {record['gflops']:.4g} blocks-only (+{record['overhead_gflops']:.2g} pruning "
        f"overhead), {record['total_gflops']:.4g} total")  # fmt: skip
  if record["img_per_s"] is not None:
    print(
      f"img/s     {record['img_per_s']:.1f} (batch {c.throughput.batch_size}, warm-up excluded)"
    )
  if record["note"]:
    print(f"note      {record['note']}")
  if record["num_nonfinite"]:
    print(f"skipped   {record['num_nonfinite']} images with NaN/inf (data.nonfinite=skip), "
          f"dataset indices {record['nonfinite'][:10]}")  # fmt: skip
  print(f"top5      {record['top5']:.4f} on {record['num_examples']} images")
  print(f"wrote     {workdir}/{name}, {workdir}/{c.results_file}"
        f"{', TensorBoard summaries' if tensorboard else ''}")  # fmt: skip
  print(f"top1={record['top1']:.6g}")


if __name__ == "__main__":
  cli.run(main)
