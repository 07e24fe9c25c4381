INSERT INTO author (id, name, code, born) VALUES (1, 'Ursula', 'UKL  ', 1929), (2, 'Italo', 'IC', 1923), (7, 'Anon', NULL, NULL);
INSERT INTO page_limit VALUES (100), (300);
INSERT INTO book (id, author_id, title, price, pages) VALUES
    (10, 1, 'The Dispossessed', 8.25, 300), (11, 1, 'The Lathe of Heaven', 12.0, 100),
    (20, 2, 'Invisible Cities', 7.5, NULL), (25, 7, 'Beowulf', NULL, NULL);
INSERT INTO tag VALUES (10, 'anarchy'), (10, 'physics'), (20, 'cities'), (25, 'epic');
INSERT INTO anything (id, v, n, t) VALUES
    (1, 42, 1, 'int'), (2, 3.25, 2, 'real'), (3, 'text', 3, 'text'), (4, x'00ff10', 4, 'blob'),
    (5, NULL, 5, NULL), (6, 2.0, 6, 'integral real'), (7, '17', 7, 'digits as text'), (8, -9223372036854775808, 8, 'min');
DELETE FROM audit WHERE seq > 2;
INSERT INTO book_fts (rowid, title, body) VALUES
    (3, 'running dogs', 'The dogs were running through the fields'),
    (9, 'quiet cats', 'Cats sleep in the sun'),
    (40, 'numbers', 12345);
INSERT INTO doc (id, title, body) VALUES (1, 'alpha', 'first searchable document'), (5, 'beta', 'second document about trees');
INSERT INTO place VALUES (1, 0.0, 1.5, 0.0, 2.0), (8, -3.25, 4.0, 10.0, 11.0);
