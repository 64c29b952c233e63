"""The PostgreSQL and Redis a production-shaped Airflow needs, borrowed from the machine for one test.

Both servers run on development and CI machines (127.0.0.1, PostgreSQL with trust auth). The
test never touches anyone else's data: it creates a database of its own and drops it afterwards,
and it claims an empty Redis database number and flushes only that one when it is done.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg2
import redis
from psycopg2 import sql

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CLAIM_KEY = "chroma-migrate-live:claim"

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'


class ServiceUnavailable(RuntimeError):
    """PostgreSQL or Redis is not reachable; the message says how to start it."""


def _postgres_admin():
    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5)
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    return connection


def check_services() -> None:
    """Raise ServiceUnavailable naming each server that does not answer and the command that starts it."""
    problems = []
    try:
        _postgres_admin().close()
    except psycopg2.Error as error:
        problems.append(f"PostgreSQL on {PG_HOST}:{PG_PORT} (user {PG_USER}, trust auth) does not answer: "
                        f"{str(error).strip()}\n  start it with: {START_POSTGRES}")
    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=5).ping()
    except redis.RedisError as error:
        problems.append(f"Redis on {REDIS_HOST}:{REDIS_PORT} does not answer: {error}\n  start it with: {START_REDIS}")
    if problems:
        raise ServiceUnavailable("The live Airflow test needs PostgreSQL and Redis.\n" + "\n".join(problems))


@contextlib.contextmanager
def postgres_database(prefix: str = "chroma_live") -> Iterator[str]:
    """A new, uniquely named database; yields its SQLAlchemy URL and drops it (and its sessions) on exit."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with contextlib.closing(_postgres_admin()) as admin, admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with contextlib.closing(_postgres_admin()) as admin, admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def postgres_database_exists(url: str) -> bool:
    name = url.rsplit("/", 1)[1]
    with contextlib.closing(_postgres_admin()) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cursor.fetchone() is not None


@dataclass(frozen=True)
class RedisDatabase:
    number: int

    @property
    def url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.number}"


@contextlib.contextmanager
def redis_database() -> Iterator[RedisDatabase]:
    """Claim an empty Redis database number (highest first, atomically by a claim key), flush it on exit."""
    token = secrets.token_hex(8)
    for number in range(15, 0, -1):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number, socket_timeout=5)
        if client.dbsize() == 0 and client.set(CLAIM_KEY, token, nx=True, ex=6 * 3600):
            break
    else:
        raise ServiceUnavailable(f"No empty Redis database among 1..15 on {REDIS_HOST}:{REDIS_PORT}.")
    try:
        yield RedisDatabase(number)
    finally:
        if client.get(CLAIM_KEY) == token.encode():
            client.flushdb()
