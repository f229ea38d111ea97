// Click a column header to sort the table by it; click again to reverse.
function sortBy(th) {
  const table = th.closest('table'), column = [...th.parentNode.children].indexOf(th), body = table.tBodies[0];
  const ascending = th.dataset.dir !== 'asc';
  th.dataset.dir = ascending ? 'asc' : 'desc';
  [...body.rows].sort((x, y) => {
    const a = x.cells[column].innerText, b = y.cells[column].innerText, n = parseFloat(a), m = parseFloat(b);
    const order = (isNaN(n) || isNaN(m)) ? a.localeCompare(b) : n - m;
    return ascending ? order : -order;
  }).forEach(row => body.appendChild(row));
}
