"""correo.queue"""
