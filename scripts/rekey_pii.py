#!/usr/bin/env python3
"""Re-encrypt the stored ID numbers, channel API keys and private signing
keys under the current [scenic] pii_key (README: "Keys and their rotation").

    .venv/bin/python scripts/rekey_pii.py -c trytond.conf -d <database>

The configuration lists the new key as pii_key and the old one(s) under
pii_key_previous; once this has run, the old keys can be dropped from it.
One transaction: all or nothing. Prints how many values were re-encrypted.
"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-c', '--config', required=True)
    parser.add_argument('-d', '--database', required=True)
    args = parser.parse_args(argv)

    from trytond import config
    config.update_etc(args.config)
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    Pool.start()
    pool = Pool(args.database)
    pool.init()
    with Transaction().start(args.database, 0) as transaction:
        from trytond.modules.scenic_ticket.vault import reencrypt_all
        counts = reencrypt_all()
        transaction.commit()
    for model, count in counts.items():
        print(f'{model}: {count} re-encrypted')
    return 0


if __name__ == '__main__':
    sys.exit(main())
