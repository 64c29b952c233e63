"""The DAG configuration loads, expands ${VAR}, and refuses mistakes naming the key."""

from __future__ import annotations

import json

import pytest

from chroma_migrate.configuration import ConfigError, load_config


def test_the_shipped_file_declares_words_and_lines_for_dev_and_prod():
    config = load_config()
    assert config.collections == ("words", "lines")
    dev, prod = config.environment("dev"), config.environment("prod")
    assert (dev.require_approval, prod.require_approval) == (False, True)
    assert (dev.schedule, prod.schedule) == ("@daily", None)
    assert config.scheduled_environment is dev
    assert prod.key_layout.pointer == "{collection}/snapshot/latest-pointer.txt"


def test_environment_variables_fill_in_values(tmp_path, monkeypatch):
    monkeypatch.setenv("CHROMA_DEV_BUCKET", "my-bucket")
    monkeypatch.setenv("CHROMA_DEV_EFS_ROOT", str(tmp_path))
    dev = load_config().environment("dev")
    assert dev.bucket == "my-bucket" and dev.efs_root == tmp_path


def _write(tmp_path, mutate) -> str:
    base = {
        "defaults": {"aws_conn_id": "aws_default", "target_version": "1.5.9", "batch_size": 100,
                     "lock_lease_minutes": 10, "lock_wait_minutes": 5},
        "collections": ["words"],
        "environments": {"dev": {"bucket": "b", "efs_root": "/e", "staging_root": "/s", "lock_table": "l",
                                 "ledger_table": "g", "require_approval": False, "schedule": None}},
    }
    mutate(base)
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(base))
    return str(path)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c: c["environments"]["dev"].pop("bucket"), "environments.dev.bucket is missing"),
    (lambda c: c["environments"]["dev"].update(target_version="0.4.9"), "environments.dev.target_version: chromadb "
                                                                          "0.4.9 is older than 0.4.15"),
    (lambda c: c["environments"]["dev"].update(target_version="latest"), "environments.dev.target_version"),
    (lambda c: c["environments"]["dev"].update(readers={"search": 1.3}), "environments.dev.readers.search must be a "
                                                                         "quoted release string"),
    (lambda c: c["environments"]["dev"].update(readers={"search": "1.3"}), "environments.dev.readers.search: '1.3' "
                                                                           "is not a chromadb release number"),
    (lambda c: c["environments"]["dev"].update(readers=["1.3.2"]), "environments.dev.readers must map"),
    (lambda c: c["environments"]["dev"].update(sample_queries={"words": [{"name": "q"}]}),
     "environments.dev.sample_queries must map each snapshot"),
    (lambda c: c["environments"]["dev"].update(sample_queries={"words": {"words": [{"name": "q"}]}}),
     "environments.dev.sample_queries.words: "),
    (lambda c: c["environments"]["dev"].update(require_approval="yes"), "environments.dev.require_approval must be"),
    (lambda c: c["environments"]["dev"].update(bukket="x"), "unknown keys ['bukket']"),
    (lambda c: c["defaults"].update(batch_size=0), "environments.dev.batch_size must be positive"),
    (lambda c: c.update(collections=["w"]), "collections[0] ('w') is not a valid ChromaDB collection name"),
    (lambda c: c["environments"].update(prod=dict(c["environments"]["dev"], schedule="@daily"),
                                        dev=dict(c["environments"]["dev"], schedule="@hourly")),
     "Only one environment can be scheduled"),
    (lambda c: c["environments"]["dev"].update(bucket="${NOT_SET_ANYWHERE}"), "NOT_SET_ANYWHERE is not set"),
    (lambda c: c["defaults"].update(key_layout={"pointer": "latest.txt"}), "lacks {collection}"),
])
def test_mistakes_are_refused_with_the_key(tmp_path, mutate, message):
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, mutate))
    assert message in str(caught.value)
    assert caught.value.fix


def test_readers_and_sample_queries_load_and_json_escaped_emoji_survive(tmp_path):
    queries = {"words": {"words": [{"name": "emoji", "where_document": {"$contains": "😀"}}]}}
    path = _write(tmp_path, lambda c: c["environments"]["dev"].update(
        readers={"receipt_label": "1.3.2", "merchant_validation": "0.4.22"}, sample_queries=queries))
    assert "\\ud83d" in (tmp_path / "config.yaml").read_text()  # json.dumps escapes it as a surrogate pair
    dev = load_config(path).environment("dev")
    assert dev.readers == {"receipt_label": "1.3.2", "merchant_validation": "0.4.22"}
    assert dev.sample_queries == queries
