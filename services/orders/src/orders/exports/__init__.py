"""CSV and XLSX exports of orders with their lines, the sales report and the month's tax."""
