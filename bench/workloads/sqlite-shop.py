#!/usr/bin/env python3
"""A real-software workload for the trace evaluator, from a different program than the
shared traces: SQLite (the system library, through Python's sqlite3) running a small shop
in WAL mode, at a rate that rises and falls. Record it with strace and convert it with the
shared traces' strace2trace.py, as their README describes:

  strace -f -y -ttt -e trace=pwrite64,pwritev,pwritev2 -o /tmp/shop.strace \\
      python3 bench/workloads/sqlite-shop.py /tmp/shop --minutes 20
  python3 ../shared/traces/strace2trace.py /tmp/shop.strace /tmp/shop /tmp/sqlite-shop.csv
  npm run bench:traces -- --trace /tmp/sqlite-shop.csv --interval 60,300,900

What it does: customers (zipf-like popularity) place orders (appended rows and index
pages), stock counts of popular products are updated in place, a nightly-style report job
rewrites a summary table every few minutes, and SQLite checkpoints its WAL back into the
database file (wal_autocheckpoint) and then reuses the WAL from its start: in-place
rewrites, appends and a wrapping log, with a seeded random so every run writes alike.
"""
import argparse, math, os, random, sqlite3, time

ap = argparse.ArgumentParser()
ap.add_argument('dir')
ap.add_argument('--minutes', type=float, default=20)
ap.add_argument('--tps', type=float, default=80, help='mean transactions per second')
ap.add_argument('--seed', type=int, default=7)
a = ap.parse_args()
os.makedirs(a.dir, exist_ok=True)
rnd = random.Random(a.seed)
db = sqlite3.connect(os.path.join(a.dir, 'shop.db'), isolation_level=None)
db.execute('PRAGMA journal_mode=WAL')
db.execute('PRAGMA synchronous=NORMAL')
db.execute('PRAGMA wal_autocheckpoint=2000')
db.executescript('''
CREATE TABLE IF NOT EXISTS product(id INTEGER PRIMARY KEY, name TEXT, stock INTEGER, price REAL);
CREATE TABLE IF NOT EXISTS customer(id INTEGER PRIMARY KEY, name TEXT, orders INTEGER, spent REAL);
CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, customer INTEGER, product INTEGER, qty INTEGER, at REAL, note TEXT);
CREATE INDEX IF NOT EXISTS orders_customer ON orders(customer);
CREATE TABLE IF NOT EXISTS summary(product INTEGER PRIMARY KEY, sold INTEGER, revenue REAL);
''')
PRODUCTS, CUSTOMERS = 20000, 100000
if db.execute('SELECT count(*) FROM product').fetchone()[0] == 0:
    db.execute('BEGIN')
    db.executemany('INSERT INTO product VALUES (?,?,?,?)', ((i, f'product {i} ' + 'x' * 60, 1000, 1 + i % 97) for i in range(PRODUCTS)))
    db.executemany('INSERT INTO customer VALUES (?,?,0,0)', ((i, f'customer {i} ' + 'y' * 40) for i in range(CUSTOMERS)))
    db.execute('COMMIT')

def zipf(n):
    # popularity ~ 1/rank^0.9, by inverse transform of a continuous approximation
    u = rnd.random()
    return min(n - 1, int(n ** u) - 1)

start = time.time()
end = start + a.minutes * 60
next_report = start + 180
while True:
    now = time.time()
    if now >= end:
        break
    # load swings over an 8-minute cycle, with a quiet minute every 6 minutes
    t = now - start
    rate = a.tps * (1 + 0.7 * math.sin(2 * math.pi * t / 480))
    if int(t // 60) % 6 == 5:
        rate *= 0.1
    db.execute('BEGIN')
    c, p, q = zipf(CUSTOMERS), zipf(PRODUCTS), 1 + rnd.randrange(3)
    db.execute('INSERT INTO orders(customer, product, qty, at, note) VALUES (?,?,?,?,?)', (c, p, q, now, 'n' * rnd.randrange(20, 200)))
    db.execute('UPDATE product SET stock = stock - ? WHERE id = ?', (q, p))
    db.execute('UPDATE customer SET orders = orders + 1, spent = spent + ? WHERE id = ?', (q * (1 + p % 97), c))
    db.execute('COMMIT')
    if now >= next_report:
        db.execute('BEGIN')
        db.execute('DELETE FROM summary')
        db.execute('INSERT INTO summary SELECT product, sum(qty), sum(qty * (1 + product % 97)) FROM orders GROUP BY product')
        db.execute('COMMIT')
        next_report = now + 150 + rnd.random() * 120
    time.sleep(rnd.expovariate(rate))
db.execute('PRAGMA wal_checkpoint(TRUNCATE)')
db.close()
