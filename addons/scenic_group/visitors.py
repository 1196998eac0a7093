"""Visitor lists of groups, imported from CSV or XLSX.

Every row is checked before anything is saved: a missing name, an ID
number that fails its rules (check character, birth date, format), the same
ID twice in the file, an ID that already holds the most tickets allowed for
that day. Errors name the row and show the ID masked, never whole.
"""
import csv
import io
from dataclasses import dataclass

from scenic_common import idnumber

MAX_ROWS = 500
NAME_HEADERS = {'name', 'visitor', '姓名', '游客姓名'}
ID_HEADERS = {'id_number', 'id', 'id number', '证件号码', '身份证号',
    '身份证号码', '证件号'}
TYPE_HEADERS = {'id_type', 'type', 'id type', '证件类型'}
TYPE_ALIASES = {
    '': idnumber.RESIDENT_ID, '身份证': idnumber.RESIDENT_ID,
    '居民身份证': idnumber.RESIDENT_ID, '护照': idnumber.PASSPORT,
    '港澳通行证': idnumber.HK_MACAU_PERMIT,
    '台湾通行证': idnumber.TAIWAN_PERMIT, '台胞证': idnumber.TAIWAN_PERMIT,
    }


class UnreadableFile(ValueError):
    pass


@dataclass
class Row:
    number: int  # as the spreadsheet numbers it (1 = first line)
    name: str
    id_type: str
    id_number: str  # normalized once valid


@dataclass
class RowError:
    number: int
    code: str
    message: str

    def __str__(self):
        return f"Row {self.number}: {self.message}"


def _cells_csv(data):
    for encoding in ('utf-8-sig', 'gb18030'):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise UnreadableFile("the CSV file is neither UTF-8 nor GB18030")
    try:
        dialect = csv.Sniffer().sniff(text[:2048], delimiters=',;\t')
    except csv.Error:
        dialect = csv.excel
    return [[c.strip() for c in row] for row in csv.reader(
            io.StringIO(text), dialect)]


def _cells_xlsx(data):
    import openpyxl
    try:
        book = openpyxl.load_workbook(
            io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for bad files
        raise UnreadableFile(f"not an XLSX workbook ({exc.__class__.__name__})")
    try:
        sheet = book.worksheets[0]
        rows = []
        for row in sheet.iter_rows(values_only=True):
            rows.append(['' if c is None else (
                        str(int(c)) if isinstance(c, float) and c.is_integer()
                        else str(c)).strip() for c in row])
        return rows
    finally:
        book.close()


def read_cells(filename, data):
    "The file's rows as lists of strings."
    name = (filename or '').lower()
    if name.endswith('.xlsx') or data[:2] == b'PK':
        return _cells_xlsx(data)
    if name.endswith(('.csv', '.txt')) or not name:
        return _cells_csv(data)
    raise UnreadableFile("use a .csv or .xlsx file")


def parse(filename, data, today=None):
    """(rows, errors) of a visitor file; checks each row on its own and
    duplicates within the file."""
    cells = read_cells(filename, data)
    columns = {'name': 0, 'id_number': 1, 'id_type': 2}
    start = 0
    if cells:
        header = [c.strip().lower() for c in cells[0]]
        found = {}
        for i, title in enumerate(header):
            if title in NAME_HEADERS:
                found['name'] = i
            elif title in ID_HEADERS:
                found['id_number'] = i
            elif title in TYPE_HEADERS:
                found['id_type'] = i
        if 'name' in found and 'id_number' in found:
            columns = {'id_type': None, **found}
            start = 1
    rows, errors, seen = [], [], {}
    body = [(n, r) for n, r in enumerate(cells, 1)
        if n > start and any(c for c in r)]
    if len(body) > MAX_ROWS:
        raise UnreadableFile(f"a group has at most {MAX_ROWS} visitors")

    def cell(row, key):
        i = columns.get(key)
        return row[i].strip() if i is not None and i < len(row) else ''
    for number, row in body:
        name = cell(row, 'name')
        raw_type = cell(row, 'id_type')
        id_type = TYPE_ALIASES.get(raw_type, raw_type.lower())
        raw_number = cell(row, 'id_number')
        if not name:
            errors.append(RowError(number, 'missing_name',
                    "the visitor's name is missing."))
            continue
        if id_type not in idnumber.ID_TYPES:
            errors.append(RowError(number, 'invalid_id_type',
                    f"unknown ID type {raw_type!r}."))
            continue
        try:
            normalized = idnumber.validate(id_type, raw_number, today=today)
        except idnumber.InvalidIDNumber as exc:
            errors.append(RowError(number, 'invalid_id_number',
                    f"{exc.message} ({_mask(raw_number)})"))
            continue
        key = (id_type, normalized)
        if key in seen:
            errors.append(RowError(number, 'duplicate_in_file',
                    f"the same ID as row {seen[key]} "
                    f"({idnumber.mask(normalized)})."))
            continue
        seen[key] = number
        rows.append(Row(number, name, id_type, normalized))
    if not rows and not errors:
        raise UnreadableFile("the file lists no visitors")
    return rows, errors


def _mask(number):
    try:
        return idnumber.mask(number or '')
    except Exception:
        return '***'


def check_booked(company, date, ticket_type, rows):
    """Errors for IDs that already hold the most tickets allowed that day."""
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    from scenic_ticket.vault import pii_vault
    if not ticket_type.id_limit or not rows:
        return []
    vault = pii_vault()
    hashes = {vault.lookup_hash(r.id_type, r.id_number): r for r in rows}
    table = Pool().get('scenic.id_day_usage').__table__()
    cursor = Transaction().connection.cursor()
    errors = []
    ordered = sorted(hashes)
    for i in range(0, len(ordered), 200):
        chunk = ordered[i:i + 200]
        cursor.execute(*table.select(table.id_hash, table.count,
                where=(table.company == company) & (table.date == date)
                & table.id_hash.in_(chunk)))
        for id_hash, count in cursor.fetchall():
            if count >= ticket_type.id_limit:
                row = hashes[id_hash]
                errors.append(RowError(row.number, 'already_booked',
                        f"this ID already holds a ticket for {date} "
                        f"({idnumber.mask(row.id_number)})."))
    return sorted(errors, key=lambda e: e.number)
