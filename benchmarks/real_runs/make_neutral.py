"""Write neutral.txt: the first 64 SST-2 sentences (KL / perplexity text for the real-model runs)."""
import csv
from pathlib import Path

here = Path(__file__).parent
rows = list(csv.DictReader(open(here / "../../../shared/data/sst2_train.csv", encoding="utf-8")))
(here / "neutral.txt").write_text("\n".join(row["text"] for row in rows[:64]) + "\n", encoding="utf-8")
